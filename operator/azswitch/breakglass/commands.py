"""The entry points ``cli.py`` dispatches to: ``azswitch plan`` and ``azswitch apply``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from azswitch.breakglass.applying import Apply, ApplyOptions, settings_for
from azswitch.breakglass.inputs import Clouds, Options, gather
from azswitch.breakglass.planning import exit_code, plan_all
from azswitch.breakglass.report import write_plan


async def run_plan(
    options: Options, environ: Mapping[str, str], stdin: TextIO, out: TextIO, err: TextIO
) -> int:
    """Print what the operator would do with each group; 0 nothing to do, 2 changes planned, 1 an error."""
    settings = settings_for(environ)
    inputs = await gather(options, environ, err, stdin)
    clouds = Clouds(settings)
    try:
        statuses = {m.key: inputs.seed(m) for m in inputs.manifests}
        rows = await plan_all(inputs, statuses, clouds, settings)
    finally:
        await clouds.aclose()
        if inputs.cluster is not None:
            inputs.cluster.close()
    write_plan(rows, options.output, out)
    return exit_code(rows)


async def run_apply(
    options: ApplyOptions, environ: Mapping[str, str], stdin: TextIO, out: TextIO, err: TextIO
) -> int:
    """Carry the plan out; 0 when every planned change was made (or none was needed), 1 otherwise, 130 when
    interrupted."""
    return await Apply(options, environ, stdin, out, err).run()
