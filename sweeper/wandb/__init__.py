"""Everything sweeper does with W&B, one job per module.

- `credentials`: the API key and server, asked of wandb itself (what `wandb login` wrote).
- `retry`: wandb's errors unwrapped to their HTTP status; transient ones retried until
  `SWEEPER_WANDB_TIMEOUT`.
- `client`: `RealClient`, the wandb calls the backend makes (public API and the agent API).
- `backend`: `WandbBackend`, the `Backend` whose sweeps and runs live on W&B.
- `issued_runs`: this host's W&B agents and the runs W&B's controller issued them.
- `references`: the W&B sweeps a home records, with their specs; `records`: W&B's records
  as sweeper's states.
- `sync`: `sweeper sync`, uploading the offline runs of local sweeps; `upload_copy`: a
  program run's folder copied for upload without the sweep id W&B would refuse.
- `runfile`, `run_metrics`: reading a run's `.wandb` file (a running program's metrics).
- `runlog`: mirroring a local sweep's run to wandb (offline without a key).

Modules here import the real wandb with absolute imports (`import wandb` is never this
package), and import it lazily: it costs about half a second.
"""
