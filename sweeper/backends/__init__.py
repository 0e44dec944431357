"""Backends: where sweeps and runs live. `base` is the interface every backend implements,
`local` the embedded one (the store and wandb's engine; `epochs` its runs' logged rows),
`ledger` the run bookkeeping the local and W&B backends share, `naming` how a command names
a sweep (id, name, id prefix); the W&B backend lives with the rest of W&B in `sweeper.wandb`.
Which backend a command means is `sweeper.locate`'s job."""
