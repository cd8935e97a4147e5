"""The one training loop and what a run needs around it: the engine (:mod:`.engine`), model selection, checkpoints,
mixed precision / channels-last / compile (:mod:`.accel`), metrics, a run's network (:mod:`.runmodel`) and a run's
data and predictions (:mod:`.rundata`)."""
