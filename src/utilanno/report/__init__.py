"""Report stage's library (PAPER-SPEC H): the paper's numbers as data (`paper_numbers.yaml`, read by
`utilanno.report.paper`) and the mapping of the paper's rows to this workflow's experiments."""
