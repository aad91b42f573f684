"""Capacity plan of a config before any job runs: disk per stage (kept and temporary), GPU-hours, LLM tokens.

python scripts/capacity.py                                  # the paper grid (config.yaml)
python scripts/capacity.py --configfile tests/config/tiny.yaml --format json
python scripts/capacity.py --rates my-cluster-rates.yaml --sizes my-corpus-sizes.yaml --concurrency 4

Rates (GPU throughput, CPU rates, bytes per row) come from capacity/rates.yaml unless --rates names another
file; dataset sizes from capacity/datasets.yaml, tables already built under <results>/data/ and --sizes files.
"""

from __future__ import annotations

import json

import click

from utilanno import capacity
from utilanno.errors import ConfigError, InputFormatError


@click.command()
@click.option(
    "--configfile",
    default="config.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Config as for snakemake --configfile (a file without `datasets:` overrides the paper grid).",
)
@click.option(
    "--rates",
    default=str(capacity.DEFAULT_RATES),
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Rates file (throughputs, bytes per row), each figure with its source.",
)
@click.option(
    "--sizes",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Extra dataset sizes by config dataset name (same layout as capacity/datasets.yaml); repeatable.",
)
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Temporary sets (one experiment's embeddings of one corpus, one training checkpoint) alive at once.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def main(configfile, rates, sizes, concurrency, fmt):
    """Print the disk, GPU-hours and LLM tokens a config's jobs need."""
    try:
        config = capacity.load_config(configfile)
        est = capacity.estimate(config, capacity.load_rates(rates), capacity.load_sizes(sizes), concurrency)
    except (ConfigError, InputFormatError) as err:
        raise click.ClickException(str(err)) from None
    if fmt == "json":
        click.echo(json.dumps({"configfile": configfile, **est.to_dict()}, indent=2))
    else:
        click.echo(f"Capacity plan of {configfile}\n")
        click.echo(capacity.format_report(est))


if __name__ == "__main__":
    main()
