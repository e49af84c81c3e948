"""What kaizen knows about: tasks, model versions and their aliases, evaluation results, skills.

These rows change rarely and name everything else (a trace belongs to a task, a run trains a model
version, an alias points production at one); each write is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import col, select

from kaizen.tools.errors import ConfigError, NotFoundError
from kaizen.tools.schema import TaskSpec
from kaizen.tools.store.base import StoreBase, get_or_raise
from kaizen.tools.store.tables import (
    AliasEvent,
    AliasRow,
    EvalResultRow,
    ModelVersionRow,
    SkillRow,
    TaskRow,
    utcnow,
)


def task_row_to_spec(row: TaskRow) -> TaskSpec:
    return TaskSpec(
        name=row.name,
        kind=row.kind,  # type: ignore[arg-type]
        description=row.description,
        labels=list(row.labels or []),
        system_prompt=row.system_prompt,
        metric=row.metric,
        base_model=row.base_model,
    )


class CatalogStore(StoreBase):
    """Tasks, model versions, aliases, evaluation results and skills."""

    # ----------------------------------------------------------------------------------- tasks
    def add_task(self, spec: TaskSpec, *, declared_in: str = "cli", base_version: str = "base") -> None:
        """Create a task; its ``production`` alias starts at ``base_version``."""
        with self.session() as s:
            if s.get(TaskRow, spec.name):
                raise ConfigError(f"task {spec.name!r} already exists: see `kaizen task show {spec.name}`")
            if s.get(ModelVersionRow, base_version) is None:
                raise NotFoundError(f"model version {base_version!r} not found: run `kaizen init` first")
            s.add(TaskRow(declared_in=declared_in, **spec.model_dump()))
            s.flush()
            s.add(AliasRow(task=spec.name, alias="production", model_version=base_version))
            s.add(AliasEvent(task=spec.name, alias="production", model_version=base_version, action="init"))

    def sync_declared_tasks(self, specs: Iterable[TaskSpec]) -> None:
        """Make tasks declared in kaizen.yaml exist (and match it) in the store."""
        for spec in specs:
            with self.session() as s:
                row = s.get(TaskRow, spec.name)
                if row is not None:
                    for k, v in spec.model_dump().items():
                        setattr(row, k, v)
                    row.declared_in = "kaizen.yaml"
                    s.add(row)
                    continue
            self.add_task(spec, declared_in="kaizen.yaml")

    def get_task(self, name: str) -> TaskSpec:
        with self.session() as s:
            row = s.get(TaskRow, name)
            if row is None:
                known = ", ".join(r.name for r in s.exec(select(TaskRow))) or "none yet"
                raise NotFoundError(
                    f"unknown task {name!r} (known: {known}): add it with `kaizen task add {name} --kind ...` "
                    "or declare it in kaizen.yaml"
                )
            return task_row_to_spec(row)

    def list_tasks(self) -> list[tuple[TaskSpec, str]]:
        with self.session() as s:
            return [
                (task_row_to_spec(r), r.declared_in) for r in s.exec(select(TaskRow).order_by(TaskRow.name))
            ]

    # ---------------------------------------------------------------------------------- models
    def add_model_version(self, row: ModelVersionRow) -> ModelVersionRow:
        with self.session() as s:
            if s.get(ModelVersionRow, row.name) is not None:
                raise ConfigError(f"model version {row.name!r} already exists: pick another name")
            if row.kind == "adapter" and s.get(ModelVersionRow, row.base_ref) is None:
                raise NotFoundError(f"base version {row.base_ref!r} not found: see `kaizen models list`")
            s.add(row)
        return row

    def update_model_metrics(self, name: str, metrics: dict[str, Any]) -> ModelVersionRow:
        """Merge ``metrics`` into a version's metrics (e.g. the suites it was promoted on)."""
        with self.session() as s:
            row = get_or_raise(
                s, ModelVersionRow, name, f"model version {name!r} not found: see `kaizen models list`"
            )
            row.metrics = dict(row.metrics or {}) | metrics
            s.add(row)
            return row

    def get_model_version(self, name: str) -> ModelVersionRow:
        with self.session() as s:
            return get_or_raise(
                s, ModelVersionRow, name, f"model version {name!r} not found: see `kaizen models list`"
            )

    def list_model_versions(self, task: str | None = None) -> list[ModelVersionRow]:
        with self.session() as s:
            q = select(ModelVersionRow).order_by(col(ModelVersionRow.created_at))
            if task:
                q = q.where((ModelVersionRow.task == task) | (col(ModelVersionRow.task).is_(None)))
            return list(s.exec(q))

    def get_alias(self, task: str, alias: str) -> AliasRow | None:
        with self.session() as s:
            return s.get(AliasRow, (task, alias))

    def aliases(self, task: str) -> dict[str, AliasRow]:
        with self.session() as s:
            return {a.alias: a for a in s.exec(select(AliasRow).where(AliasRow.task == task))}

    def alias_history(self, task: str) -> list[AliasEvent]:
        with self.session() as s:
            return list(
                s.exec(select(AliasEvent).where(AliasEvent.task == task).order_by(col(AliasEvent.id)))
            )

    def set_aliases(
        self,
        task: str,
        changes: dict[str, tuple[str, int | None]],
        *,
        action: str,
        actor: str = "",
        note: str = "",
    ) -> None:
        """Move several aliases of a task in one transaction, recording each move."""
        with self.session() as s:
            for alias, (version, skill) in changes.items():
                row = s.get(AliasRow, (task, alias)) or AliasRow(
                    task=task, alias=alias, model_version=version
                )
                row.model_version, row.skill_version, row.updated_at = version, skill, utcnow()
                s.add(row)
                s.add(
                    AliasEvent(
                        task=task,
                        alias=alias,
                        model_version=version,
                        skill_version=skill,
                        action=action,
                        actor=actor,
                        note=note,
                    )
                )

    # ----------------------------------------------------------------------------------- evals
    def add_eval_result(self, row: EvalResultRow) -> EvalResultRow:
        with self.session() as s:
            s.add(row)
            s.flush()
            s.refresh(row)
        return row

    def eval_results(
        self,
        task: str | None = None,
        model_version: str | None = None,
        *,
        model_versions: Iterable[str] | None = None,
    ) -> list[EvalResultRow]:
        """Evaluation results in the order they were recorded (of one version, or of any of ``model_versions``)."""
        with self.session() as s:
            q = select(EvalResultRow).order_by(col(EvalResultRow.id))
            if task:
                q = q.where(EvalResultRow.task == task)
            if model_version:
                q = q.where(EvalResultRow.model_version == model_version)
            if model_versions is not None:
                q = q.where(col(EvalResultRow.model_version).in_(list(model_versions)))
            return list(s.exec(q))

    # ---------------------------------------------------------------------------------- skills
    def add_skill(self, task: str, body: dict[str, Any], parent: int | None) -> dict[str, Any]:
        """Store ``body`` as the task's next skill version, in one transaction; returns the stored body.

        A version with the same content and parent already stored is returned instead (a resumed
        run that re-asks the brain must not mint a duplicate).
        """

        def content(b: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in b.items() if k not in ("name", "version")}

        with self.session() as s:
            for row in s.exec(select(SkillRow).where(SkillRow.task == task, SkillRow.parent == parent)):
                if content(row.body) == content(body):
                    return row.body
            last = s.exec(
                select(SkillRow.version).where(SkillRow.task == task).order_by(col(SkillRow.version).desc())
            ).first()
            stored = content(body) | {"name": task, "version": (last or 0) + 1}
            s.add(SkillRow(task=task, version=stored["version"], body=stored, parent=parent))
        return stored

    def get_skill_row(self, task: str, version: int) -> SkillRow | None:
        with self.session() as s:
            return s.exec(select(SkillRow).where(SkillRow.task == task, SkillRow.version == version)).first()

    def skill_rows(self, task: str) -> list[SkillRow]:
        with self.session() as s:
            return list(s.exec(select(SkillRow).where(SkillRow.task == task).order_by(col(SkillRow.version))))
