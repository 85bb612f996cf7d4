"""What a training stage declares: one object per stage, everything about it in its module.

A stage module declares a Stage subclass and one object of it, listed in
`udamobile.training.stages.REGISTRY`. All that the rest of the package knows about
a stage, it reads from that object:

- the config: `name`; `recipe`, its edits to the field defaults (the
  paper's adaptation stage); `preset_edits`, {preset: edits} of the presets
  that change it; `validate(cfg)`, the checks its settings need beyond each
  field's own; `written_before_fields`, the values a config.json written
  before a field existed was trained with;
- the networks: those it builds (`networks`, names of `udamobile.nets.networks`),
  takes from earlier stages of its method (`restores`; `restored_from` names
  the earlier stage's network a copy is taken from, `restore_flags` the flag
  naming a folder to take it from instead) and never updates (`frozen`);
  `network_models(cfg, workdir, sources, chief)`, the ModelConfig of a network
  built from another stage's config (the distill stage's teacher);
  `segmenter_init_flag`, the flag naming a file its segmenter starts from;
  `fixed_edits(cfg)`, edits that follow the flags (the distill stage's student);
  `own_fields`, the fields only it reads, refused on a run without it;
- its players: `updates`, each an optimizer with its own schedule
  (`udamobile.training.stages.updates`), and `update_starts(cfg)`, the step each
  starts at and the flag that sets it;
- its data: `train_splits(cfg)`, the (dataset, root, split) it trains on,
  and `build_inputs(cfg, start_step, run)`, its endless tf.data stream of
  batches of `batch_keys` from a step; `stream_starts(cfg)`, the steps at
  which the stream is made again (self-training's rounds);
- `make_step(state, cfg, active)`: its tf.function over one batch;
  `summary_images` and `progress_metrics`: what it shows.

Declarations import no TensorFlow (`udamobile.deferred`): the config, the
flags and the table runner read them.
"""
import abc
import dataclasses
import typing


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a stage's inputs may need of its run beyond the config.

    Long work while the stream is made (a labelling pass) calls `check_stop`
    between its batches: it raises once the run is asked to stop (the
    trainer's, after saving a checkpoint)."""
    workdir: str
    chief: bool
    bad_files: object  # data_pipelines.BadFiles
    state: object  # the TrainingState: self-training labels with its segmenter
    check_stop: typing.Callable = lambda: None


class Stage(abc.ABC):
    """Base of every stage; each subclass fills in the class attributes it needs."""
    name = None
    recipe = {}
    preset_edits = {}
    written_before_fields = {}
    networks = ()
    restores = ()
    restored_from = {}
    restore_flags = {}
    frozen = ()
    segmenter_init_flag = "init_checkpoint"
    own_fields = ()
    updates = ()
    uses_pools = False
    segmenter_batch_norm_trains = False
    needs_trained_segmenter = False  # refuses --allow_random_start
    batch_keys = ()
    progress_metrics = ()

    def validate(self, cfg):
        """Raises UsageError for settings the stage cannot run with."""

    def fixed_edits(self, cfg):
        """(origin, {field: value}) applied after the flags to `cfg`, or None."""
        return None

    def network_models(self, cfg, workdir, sources, chief):
        """{network: ModelConfig} of the networks not built from `cfg.model`."""
        return {}

    @abc.abstractmethod
    def train_splits(self, cfg):
        """[(dataset, root, split)] the stage trains on, each once."""

    @abc.abstractmethod
    def build_inputs(self, cfg, start_step, run):
        """Its tf.data stream of batches from step `start_step` (`run`: a RunContext)."""

    def stream_starts(self, cfg):
        """The steps at which its stream is made again (with `build_inputs`)."""
        return (0,)

    def update_starts(self, cfg):
        """{update name: (first step, the flag that sets it or None)} of the updates
        this config runs; an update left out never runs (its loss weighted 0)."""
        return {u.name: (0, None) for u in self.updates}

    def active_updates(self, step, cfg):
        """The names of the updates applied at global step `step` (a frozenset)."""
        return frozenset(name for name, (start, _) in self.update_starts(cfg).items()
                         if step >= start)

    def idle_updates(self, cfg):
        """{update name: (first step, flag)} of the updates that would start, but not
        within the config's steps: a shrunk run that never trains them."""
        return {name: start for name, start in self.update_starts(cfg).items()
                if start[0] >= cfg.optim.steps}

    @abc.abstractmethod
    def make_step(self, state, cfg, active):
        """The tf.function of one step with the updates `active` applied."""

    def summary_images(self, state, batch):
        return {}

    @property
    def draws_images(self):
        return type(self).summary_images is not Stage.summary_images

    @property
    def trains_segmenter(self):
        return any("segmenter" in update.networks for update in self.updates)

    @property
    def evaluates(self):
        """Stages that train or re-estimate a segmenter score it (a translation stage
        has none to score)."""
        return "segmenter" in self.networks and "segmenter" not in self.frozen

    def __repr__(self):
        return f"<stage {self.name}>"
