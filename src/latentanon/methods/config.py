"""Config of the ``train`` stage: which method it fits (``train.method``) and every method's knobs.

The paper AAM's knobs (adapter, weights, tasks, privacy, lr, ...) sit at the top level, as before;
other methods with knobs have their own sub-section (``train.adversarial``, ...)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class LossWeights:
    latent_consistency: float = 100.0  # w_LC
    utility: float = 1.0  # w_T
    privacy: float = 1.0  # w_B
    temperature: float = 0.1  # NT-Xent tau


@dataclass(frozen=True)
class AdapterConfig:
    blocks: int = 3
    heads: int = 8
    mlp: bool = True
    mlp_ratio: float = 2.0


@dataclass(frozen=True)
class TaskWeights:
    ar: float = 1.0
    tad: float = 1.0
    ad: float = 1.0


@dataclass(frozen=True)
class PrivacyConfig:
    """How L_B is measured."""

    # A learned projection head (the critic) that tries to match two clips of one video while the
    # adapter tries to make it fail (gradient reversal). Without it, L_B compares the adapter's
    # raw outputs by cosine, which the adapter can raise by adding large clip-specific components
    # while the attributes stay linearly readable.
    critic: bool = False
    critic_hidden: int = 128
    # Which pairs of the same video are pushed apart: "static" (the paper) or "static+moving"
    # (also two different moving clips / snippets, the features that are actually shared).
    views: Literal["static", "static+moving"] = "static"


@dataclass(frozen=True)
class AdversarialConfig:
    """The gradient-reversal adapter (needs private labels)."""

    steps: int = 200
    lr: float = 3e-3
    reversal: float = 1.0  # gradient-reversal strength
    consistency: float = 0.1  # weight of the variance-normalised MSE to the input


@dataclass(frozen=True)
class BottleneckConfig:
    """The stochastic task bottleneck (label-free; latentanon.methods.bottleneck)."""

    code_dim: int = 32  # k: width of the published code
    hidden: int = 64  # width of the MLP's two hidden layers; 0: a linear map
    sigma: float = 1.0  # std of the Gaussian noise on the code (per dimension; |code| = sqrt(k))
    compaction: float = 1.0  # weight of the within-class spread of moving clips / snippets
    static_compaction: float = 1.0  # weight of the spread of all static clips around one point
    steps: int = 600  # full-batch AdamW steps
    eval_every: int = 20  # steps between val-loss checks; the best val step is kept
    lr: float = 3e-3
    weight_decay: float = 1e-2
    # Publish-time noise: "fresh" (OS entropy, a new draw every release), "keyed_clip" (memoised per
    # video, kind and clip under the secret in LATENTANON_NOISE_SECRET: every release identical),
    # "keyed_video" (one draw per video and kind under the secret, the same on all its clips).
    noise: str = "fresh"


@dataclass(frozen=True)
class DistilConfig:
    """The distilled task code (label-free; latentanon.methods.distil)."""

    outputs: str = "posteriors"  # "logits" or "posteriors" (softmax / sigmoid of the heads)
    temperature: float = 1.0  # posteriors of logits / temperature: below 1 sharpens them
    # with posteriors, AD's score as its logit instead: frame AUC ranks scores, and a saturated
    # sigmoid cannot rank (measured: AD drop 3.1% with the posterior, see docs/results.md)
    ad_logit: bool = True
    step: float = 0.25  # > 0: the code rounded to this grid (identical on every release)
    # a task's own grid (None: ``step``). Measured on the main job's features (docs/results.md):
    # AR top-1 wants a fine grid on its posteriors, TAD's detections a coarse one
    ar_step: float | None = None
    tad_step: float | None = None
    ad_step: float | None = None
    # raw heads per task whose outputs the code averages (the first is the one picked on val; the
    # others share its input form and hyper-parameters, seeded as fitting.fit_heads seeds restarts)
    ensemble: int = 1
    # each kind's code carries only the blocks of the seen tasks that read that kind (AR: clips and
    # static clips; TAD, AD: snippets), the others zero; a kind no seen task reads keeps every
    # block. Measured: the AR block on anomaly snippets costs AD 3.2 points, a head overfits it
    per_kind: bool = True


@dataclass(frozen=True)
class FisherConfig:
    """The seen tasks' discriminant code with appearance as nuisance (label-free; methods.fisher)."""

    shrinkage: float = 0.1  # share of the nuisance's mean variance added on its diagonal
    static_weight: float = 1.0  # weight of the static clips' scatter (appearance) in the nuisance


@dataclass(frozen=True)
class TrainConfig:
    # Registry name of the method the train stage fits (latentanon.methods.registry.METHODS):
    # paper, paper_batch, leace, adversarial, noise@<scale>, identity, ...; "tuned" takes the
    # method the tune stage chose.
    method: str = "paper"
    seed: int = 0
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    weights: LossWeights = field(default_factory=LossWeights)
    tasks: TaskWeights = field(default_factory=TaskWeights)  # weight 0 holds a task out (unseen)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    use_tuned_weights: bool = True  # take the weights chosen by the tune stage when present
    # The paper's 1e-4 / 100 epochs assume many steps per epoch; a few hundred training videos
    # give about one step per epoch, where 1e-2 / 200 epochs was measured to move the adapter.
    lr: float = 1e-2
    weight_decay: float = 0.01
    batch_size: int = 512
    epochs: int = 200
    # stop once the val selection score has not improved for this many epochs (0: run every
    # epoch); the best epoch is kept either way, so this only skips epochs that would not be chosen
    patience: int = 0
    device: str = "auto"
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    bottleneck: BottleneckConfig = field(default_factory=BottleneckConfig)
    distil: DistilConfig = field(default_factory=DistilConfig)
    fisher: FisherConfig = field(default_factory=FisherConfig)
