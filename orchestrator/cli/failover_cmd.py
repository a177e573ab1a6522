"""``mcrepl failover promote``: move a dataset's primary on a real topology (see docs/failover.md).

The same library call the drills make (:meth:`SyncEngine.promote`): drain what is logged
into the target, take its capture position, switch the pointer under a new epoch (the
fencing token), request an anti-entropy comparison for the next pass, and audit it.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import EXIT_INPUT, ConfigOption, check_dataset, cli_errors, console, fail, load, local_endpoints


def register(app: typer.Typer) -> None:
    """Add the ``failover`` command group."""
    failover = typer.Typer(help="Move a dataset's primary: promote a replica under a new fencing epoch.",
                           no_args_is_help=True)
    app.add_typer(failover, name="failover")

    @failover.command("promote")
    def promote(location: str = typer.Argument(..., help="The location to make primary, e.g. dynamodb:eu-central-1."),
                config: Path = ConfigOption,
                dataset: str = typer.Option(..., "--dataset", "-d", help="The dataset whose primary moves."),
                force: bool = typer.Option(False, "--force", help="Promote even if logged changes could not be "
                                           "applied to the target (they are delivered later, when it can take them)."),
                fence: bool = typer.Option(True, "--fence/--no-fence", help="Record the end of the old epoch "
                                           "(writes stamped under it afterwards are refused). Keep it on."),
                yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
                output: str = typer.Option("text", "--format", "-f", help="text or json.")) -> None:
        """Promote LOCATION to primary of the dataset; the old primary rejoins as a replica on the next pass."""
        from mcrepl.orchestrator.state import StateStore
        from mcrepl.orchestrator.sync import PromotionRefused, SyncEngine
        from mcrepl.policies.router import router_for

        from .sync_cmd import state_path
        cfg = load(config)
        check_dataset(cfg, dataset)
        if not yes and not typer.confirm(f"Promote {location} to primary of {dataset!r}?"):
            fail("not confirmed (pass --yes in scripts)", EXIT_INPUT)
        with cli_errors():
            engine = SyncEngine(cfg, StateStore(state_path(cfg)), local_endpoints=local_endpoints(cfg),
                                router=router_for(cfg))
            try:
                result = engine.promote(dataset, location, force=force, fence=fence)
            except PromotionRefused as exc:
                fail(str(exc), EXIT_INPUT)
            finally:
                engine.close()
        if output == "json":
            typer.echo(json.dumps(result.to_dict(), indent=2))
            return
        if result.already:
            console.print(f"{location} is already the primary of {dataset} (epoch {result.epoch}): nothing to do")
            return
        console.print(f"{dataset}: {location} is primary (epoch {result.epoch}, was {result.previous}); "
                      f"{result.drained} logged changes drained into it, {result.undrained} still to deliver",
                      highlight=False)
        for key in result.undrained_keys[:20]:
            console.print(f"  undelivered: {key}", highlight=False)
