"""The account's schema: pipelines with their stages, as seeded and as people edit them, and the
custom fields of leads and companies."""

from __future__ import annotations

from collections.abc import Sequence

from amo_client.fake.fields import ENUM_TYPES, SUPPORTED_TYPES, CustomField
from amo_client.fake.records import (
    LOST_STATUS_ID,
    LOST_STATUS_NAME,
    UNSORTED_STATUS_NAME,
    WON_STATUS_ID,
    WON_STATUS_NAME,
    Pipeline,
    PipelineRef,
    Status,
)
from amo_client.fake.store import AccountStore

_STAGE_COLORS = ("#99ccff", "#ffff99", "#ffcc66", "#deff81", "#ccc8f9", "#87f2c0", "#f9deff")


class AccountSchema(AccountStore):
    """Pipelines, their stages and custom fields: added, looked up, edited."""

    def add_pipeline(
        self,
        name: str,
        statuses: Sequence[str],
        *,
        pipeline_id: int | None = None,
        status_ids: Sequence[int] | None = None,
        unsorted: bool = True,
        is_main: bool | None = None,
    ) -> PipelineRef:
        """A pipeline with working ``statuses`` in board order.

        Like in amoCRM it starts with «Неразобранное» (incoming requests not yet taken, type 1)
        unless ``unsorted`` is False, and ends with 142 «Успешно реализовано» and
        143 «Закрыто и не реализовано», which every pipeline shares.
        """
        if status_ids is not None and len(status_ids) != len(statuses):
            raise ValueError("status_ids must match statuses one to one")
        with self._lock:
            new_id = self._claim_id("pipeline", pipeline_id)
            main = is_main if is_main is not None else not self._pipelines
            pipeline = Pipeline(
                new_id, name, sort=len(self._pipelines) + 1, is_main=main, is_unsorted_on=unsorted
            )
            sort = 10
            if unsorted:
                status_id = self._new_id("status")
                pipeline.statuses.append(
                    Status(status_id, UNSORTED_STATUS_NAME, sort, new_id, "#c1c1c1", 1, False)
                )
            for position, status_name in enumerate(statuses):
                sort += 10
                wanted = status_ids[position] if status_ids is not None else None
                status_id = self._claim_id("status", wanted)
                color = _STAGE_COLORS[position % len(_STAGE_COLORS)]
                pipeline.statuses.append(
                    Status(status_id, status_name, sort, new_id, color, 0, True)
                )
            pipeline.statuses.append(
                Status(WON_STATUS_ID, WON_STATUS_NAME, 10000, new_id, "#CCFF66", 0, False)
            )
            pipeline.statuses.append(
                Status(LOST_STATUS_ID, LOST_STATUS_NAME, 11000, new_id, "#D5D8DB", 0, False)
            )
            self._pipelines[new_id] = pipeline
            self._touch()
            return self._pipeline_ref(pipeline)

    def pipeline(self, pipeline_id: int) -> PipelineRef:
        """The pipeline as it is now, its stages by name in board order."""
        with self._lock:
            return self._pipeline_ref(self._pipelines[pipeline_id])

    def _pipeline_ref(self, pipeline: Pipeline) -> PipelineRef:
        working = [status for status in pipeline.statuses if status.type == 0]
        unsorted = [status for status in pipeline.statuses if status.type == 1]
        return PipelineRef(
            id=pipeline.id,
            name=pipeline.name,
            statuses={status.name: status.id for status in pipeline.statuses},
            first_status_id=working[0].id,
            unsorted_status_id=unsorted[0].id if unsorted else None,
        )

    def _pipeline_for(self, pipeline_id: int | None) -> Pipeline:
        if pipeline_id is None:
            main = next((p for p in self._pipelines.values() if p.is_main), None)
            if main is None:
                raise ValueError("no pipeline: call add_pipeline() first")
            return main
        found = self._pipelines.get(pipeline_id)
        if found is None:
            raise ValueError(f"no pipeline {pipeline_id}")
        return found

    def add_status(
        self,
        pipeline_id: int,
        name: str,
        *,
        after: int | None = None,
        status_id: int | None = None,
        color: str | None = None,
    ) -> int:
        """Add a working stage after the stage ``after`` (default: after the last working one).

        The working stages are renumbered ``sort`` 20, 30, ... in board order, as moving
        stages in the interface renumbers them.
        """
        with self._lock:
            pipeline = self._pipelines[pipeline_id]
            statuses = pipeline.statuses
            if after is None:
                position = self._first_final_position(pipeline)
            else:
                anchor = pipeline.status(after)
                if anchor is None or anchor.id in (WON_STATUS_ID, LOST_STATUS_ID):
                    raise ValueError(f"status {after} is not a stage to add after")
                position = statuses.index(anchor) + 1
            new_id = self._claim_id("status", status_id)
            working = sum(1 for s in statuses if s.type == 0 and s.is_editable)
            shade = color or _STAGE_COLORS[working % len(_STAGE_COLORS)]
            statuses.insert(position, Status(new_id, name, 0, pipeline_id, shade, 0, True))
            self._renumber(pipeline)
            self._touch()
            return new_id

    @staticmethod
    def _first_final_position(pipeline: Pipeline) -> int:
        return next(
            i
            for i, status in enumerate(pipeline.statuses)
            if status.id in (WON_STATUS_ID, LOST_STATUS_ID)
        )

    @staticmethod
    def _renumber(pipeline: Pipeline) -> None:
        sort = 10
        for status in pipeline.statuses:
            if status.id in (WON_STATUS_ID, LOST_STATUS_ID):
                continue
            status.sort = sort
            sort += 10

    def rename_status(self, pipeline_id: int, status_id: int, name: str) -> None:
        """Rename a stage; its id and the leads in it stay."""
        with self._lock:
            status = self._pipelines[pipeline_id].status(status_id)
            if status is None:
                raise KeyError(status_id)
            status.name = name
            self._touch()

    def delete_status(self, pipeline_id: int, status_id: int) -> None:
        """Delete an empty working stage.

        amoCRM refuses to delete a stage that holds leads (the interface asks where to move
        them first), the two closing stages and «Неразобранное»; so does this, with
        ValueError. A pipeline keeps at least one working stage.
        """
        with self._lock:
            pipeline = self._pipelines[pipeline_id]
            status = pipeline.status(status_id)
            if status is None:
                raise KeyError(status_id)
            if status.type != 0 or not status.is_editable:
                raise ValueError(f"stage {status_id} «{status.name}» cannot be deleted")
            if any(
                lead.pipeline_id == pipeline_id and lead.status_id == status_id
                for lead in self._entities["leads"].values()
            ):
                raise ValueError(f"stage {status_id} «{status.name}» still holds leads")
            if sum(1 for s in pipeline.statuses if s.type == 0 and s.is_editable) == 1:
                raise ValueError("a pipeline keeps at least one working stage")
            pipeline.statuses.remove(status)
            self._renumber(pipeline)
            self._touch()

    def add_custom_field(
        self,
        name: str,
        field_type: str,
        *,
        enums: Sequence[str] = (),
        code: str | None = None,
        entity: str = "leads",
        field_id: int | None = None,
        sort: int | None = None,
        is_api_only: bool = False,
    ) -> int:
        if field_type not in SUPPORTED_TYPES:
            raise ValueError(f"unsupported custom field type {field_type!r}")
        if field_type in ENUM_TYPES and not enums:
            raise ValueError(f"a {field_type} field needs enums")
        with self._lock:
            return self._create_field(
                entity,
                name,
                field_type,
                enums=list(enums),
                code=code,
                field_id=field_id,
                sort=sort,
                is_api_only=is_api_only,
            ).id

    def _create_field(
        self,
        entity: str,
        name: str,
        field_type: str,
        *,
        enums: list[str],
        code: str | None,
        field_id: int | None,
        sort: int | None,
        is_api_only: bool,
    ) -> CustomField:
        new_id = self._claim_id("field", field_id)
        definitions = self._fields[entity]
        definition = CustomField(
            id=new_id,
            name=name,
            type=field_type,
            entity_type=entity,
            account_id=self.account_id,
            code=code,
            sort=sort if sort is not None else 500 + 10 * len(definitions),
            is_api_only=is_api_only,
            enums=[
                {"id": self._new_id("enum"), "value": value, "sort": 500 + 10 * position}
                for position, value in enumerate(enums)
            ]
            if field_type in ENUM_TYPES
            else [],
        )
        definitions[new_id] = definition
        self._touch()
        return definition

    def field_id(self, name: str, *, entity: str = "leads") -> int | None:
        """The id of the custom field called ``name``, or None."""
        with self._lock:
            return next((d.id for d in self._fields[entity].values() if d.name == name), None)

    def enum_id(self, field_id: int, value: str, *, entity: str = "leads") -> int:
        with self._lock:
            enum = self._fields[entity][field_id].enum_by_value(value)
            if enum is None:
                raise KeyError(value)
            return int(enum["id"])
