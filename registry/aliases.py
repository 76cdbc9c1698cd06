"""Aliases (``champion``, ``canary``): named pointers moved only by compare-and-swap."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from registry.errors import AliasConflictError
from registry.eventlog import EventLogMixin
from registry.schema import AliasRow
from registry.transactions import check_name

__all__ = ["AliasMixin"]


class AliasMixin(EventLogMixin):
    """Reading aliases and moving them; every move is appended to the event log."""

    def get_alias(self, model: str, alias: str) -> int | None:
        """The version an alias points at, or None."""
        query = select(AliasRow.version).where(AliasRow.model == model, AliasRow.alias == alias)
        return self._read(lambda s: s.scalars(query).first())

    def aliases(self, model: str) -> dict[str, int]:
        """Every alias of ``model`` and the version it points at."""
        query = select(AliasRow.alias, AliasRow.version).where(AliasRow.model == model)
        return {a: v for a, v in self._read(lambda s: s.execute(query).tuples().all())}

    def set_alias(
        self,
        model: str,
        alias: str,
        version: int | None,
        *,
        expected: int | None,
        reason: str,
        actor: str,
    ) -> None:
        """Point ``alias`` at ``version`` (None clears it) only if it now points at ``expected``."""
        check_name("alias", alias, longest=64)

        def op(s: Session) -> None:
            key = (AliasRow.model == model) & (AliasRow.alias == alias)
            now = self.clock()
            if version is not None:
                self._version_row(s, model, version)
            if version is not None and expected is None:
                stmt: Any = (
                    self._insert(AliasRow)
                    .values(model=model, alias=alias, version=version, updated_at=now)
                    .on_conflict_do_nothing()
                    .execution_options(preserve_rowcount=True)
                )
            elif version is not None:
                stmt = (
                    update(AliasRow)
                    .where(key & (AliasRow.version == expected))
                    .values(version=version, updated_at=now)
                )
            elif expected is not None:
                stmt = delete(AliasRow).where(key & (AliasRow.version == expected))
            else:
                stmt = None
            changed = cast(CursorResult[Any], s.execute(stmt)).rowcount if stmt is not None else 0
            if changed != 1:
                current = s.scalars(select(AliasRow.version).where(key)).first()
                if stmt is None and current is None:
                    return  # clearing an alias that is already clear, as expected
                raise AliasConflictError(
                    f"alias {alias!r} of model {model!r} points at {current}, not {expected}: "
                    "another change won; re-read the alias and decide again"
                )
            kind = "alias.set" if version is not None else "alias.cleared"
            versions = [version] if version is not None else [cast(int, expected)]
            payload = {"alias": alias, "version": version, "previous": expected}
            self._append(s, kind, model, versions, reason, actor, payload)

        self._write(op)
