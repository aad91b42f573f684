"""Training stage (PAPER-SPEC C-E): label sets and group sampling, the encoder, the losses, the trainer."""
