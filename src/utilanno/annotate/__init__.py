"""Annotation stage (PAPER-SPEC B): pools, prompts, engines, the LLM steps, output parsing and REPLUG."""

# The LLM steps in order, and what each reads besides its pool shard: earlier steps of the same shard.
STEPS = ("relsel", "pseudo_answer", "utilsel", "utilrank")
STEP_NEEDS = {
    "relsel": (),
    "pseudo_answer": ("relsel",),
    "utilsel": ("relsel", "pseudo_answer"),
    "utilrank": ("relsel", "pseudo_answer"),
}
