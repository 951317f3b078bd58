"""fdcheck: executable checks of Wen & Li (ICML 2021), "Toward Understanding the Feature Learning Process of
Self-supervised Contrastive Learning".

The package follows the paper, one module per concept: :mod:`~fdcheck.config` (parameters),
:mod:`~fdcheck.data` (Definition 2.1), :mod:`~fdcheck.augment` (Definition 2.3), :mod:`~fdcheck.network`
(Section 2.2), :mod:`~fdcheck.loss` (Definition 2.2), :mod:`~fdcheck.symbolic` (the SymPy oracle),
:mod:`~fdcheck.train`, :mod:`~fdcheck.probes` (Definition 3.1), :mod:`~fdcheck.metrics`, :mod:`~fdcheck.claims`,
:mod:`~fdcheck.sweep` and :mod:`~fdcheck.report`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fdcheck")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.1.0"

from .config import ModelConfig  # noqa: E402
from .loss import contrastive_loss_and_grad  # noqa: E402

__all__ = ["ModelConfig", "__version__", "contrastive_loss_and_grad"]
