"""utilanno: utility-focused LLM annotation for retrieval and RAG (library behind the Snakemake workflow).

Nothing here imports Snakemake: the workflow calls the library through the click scripts in `scripts/`.
"""

__version__ = "0.1.0"
