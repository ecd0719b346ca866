"""Online models that learn from the stream: propensity, receptivity (send time), channel
and device affinity, fatigue and next need.

:class:`Predictor` is the facade: the moment stage calls ``on_event`` on every
event (the per-customer :class:`PredictState` is saved with the customer's
moment state), the decide layer calls ``predictions``. The population models
are river estimators, snapshotted with the stage's checkpoint.
"""

from momently.predict.evaluation import ModelReport
from momently.predict.predictions import Predictions
from momently.predict.predictor import Predictor
from momently.predict.settings import PredictSettings
from momently.predict.state import PredictState

__all__ = ["ModelReport", "PredictSettings", "PredictState", "Predictions", "Predictor"]
