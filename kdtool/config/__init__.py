"""Run options declared once: the table of the training commands' options (:mod:`.options`: type, default, help,
when each applies, whether it changes a run's result), the train / distill / import configs, their resolution and
checks, dataset-family defaults (:mod:`.runconfig`), and a recorded run's config rebuilt with changes
(:mod:`.rerun`).

Layer: above the building blocks it checks options against (data, models, losses, q, runs, trackers), below
everything built from a config (training, distill, reporting, workflows, cli)."""
