"""motionlab-app: a local web viewer of runs, generated sequences with their keypoint layers and metric traces, and
a demo that animates uploads with a run's checkpoint (Gradio, the ``app`` extra)."""
