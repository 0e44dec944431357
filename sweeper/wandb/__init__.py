"""Everything sweeper does with W&B, one job per module.

- `credentials`: the API key and server, asked of wandb itself (what `wandb login` wrote).
- `retry`: wandb's errors unwrapped to their HTTP status; transient ones retried until
  `SWEEPER_WANDB_TIMEOUT`.
- `client`: `RealClient`, the wandb calls the backend makes (public API and the agent API).
- `backend`: `WandbBackend`, the `Backend` whose sweeps and runs live on W&B.
- `sync`: `sweeper sync`, uploading the offline runs of local sweeps.
- `runlog`: mirroring a local sweep's run to wandb (offline without a key).

Modules here import the real wandb with absolute imports (`import wandb` is never this
package), and import it lazily: it costs about half a second.
"""
