"""Backends: where sweeps and runs live. `base` is the interface every backend implements,
`local` the embedded one (the store and wandb's engine), `ledger` the run bookkeeping the
local and W&B backends share; the W&B backend lives with the rest of W&B in `sweeper.wandb`.
Which backend a command means is `sweeper.locate`'s job."""
