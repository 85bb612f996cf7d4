"""Distillation of an adapted segmenter into a smaller student, beyond the paper.

    stage    reads                                   networks
    distill  a source patch x_S with its label y_S   segmenter: the student, built from
             beside a target patch x_T               --student's row (nets/students.py);
             (x_T alone at lambda_ce 0)              teacher: the method's last trained
                                                     segmenter (or --teacher_dir's), frozen

The adapted segmenter is the best model of the target a method leaves, and it
labels any number of unlabelled target images. The student learns its
predictions on the target's train images (Hinton et al. 2015; docs/distillation.md):

    L = D(M_t(x_T), M_s(x_T)) + lambda_ce CE(y_S, M_s(x_S)) + L2

with D the T^2-scaled KL divergence to the teacher's probabilities at
temperature T (`--distill_targets=soft`, `losses.distillation_loss`) or the
cross-entropy to its top class (`hard`). The source's labels stay beside
them, so that what the teacher gets wrong on a class the source shows is not
all the student learns of it. The teacher runs in inference mode and is never
updated; the student's batch norm trains.

The student's segmenter fields are its row's, set after the flags
(`fixed_edits`): a flag widening the segmenter widens the teacher's stages, not
the student. It starts from `--student_init_checkpoint` (an ImageNet
MobileNetV2 of its width) or at random; its start is printed.

At its start the stage writes <workdir>/teacher.json: the teacher's folder and
checkpoint (a teacher in the same method folder relative to the stage's, so
that a moved method folder still finds it; another absolute) and its config. A
resumed stage builds the teacher from that config and takes its weights from
its own checkpoint, which holds them.
"""
import os

from udamobile import errors, files
from udamobile.deferred import deferred
from udamobile.nets.students import STUDENTS
from udamobile.training import inputs
from udamobile.training.stages.base import Stage
from udamobile.training.stages.updates import SEGMENTER

# workdirs imports the config, which reads this module: deferred, so that the stages
# import first as well as the config.
checkpointing, images, losses, steps, workdirs = deferred(
    "udamobile.training.checkpointing", "data_pipelines.images", "udamobile.training.losses",
    "udamobile.training.stages.steps", "udamobile.training.workdirs")

TEACHER_FILE = "teacher.json"
TEACHER = "teacher"


def teacher_record(workdir):
    """{"workdir", "checkpoint", "config"} of the teacher of the distill stage in
    `workdir`, folders absolute and config a Config; None if it has no teacher.json."""
    path = os.path.join(workdir, TEACHER_FILE)
    if not os.path.isfile(path):
        return None
    record = files.read_json(path, keys=("workdir", "checkpoint", "config"), remedy=(
        "it names the teacher the student learns from: restore it, or remove the stage's "
        "work directory to distil again"))
    try:
        teacher_cfg = workdirs.from_record(record["config"])
    except (ValueError, KeyError, TypeError, errors.UsageError) as e:
        raise errors.StateFileError(f"{path} is damaged: its config does not read ({e}); "
                                    "restore it, or remove the stage's work directory") from None
    return {"workdir": os.path.normpath(os.path.join(workdir, record["workdir"])),
            "checkpoint": os.path.normpath(os.path.join(workdir, record["checkpoint"])),
            "config": teacher_cfg}


def _new_teacher_record(cfg, workdir, checkpoint):
    """teacher.json's record for a stage starting from the teacher `checkpoint`; refuses a
    teacher the student cannot learn from."""
    folder = workdirs.workdir_of_checkpoint(checkpoint)
    if folder is None:
        raise errors.StartError(f"the teacher's checkpoint {checkpoint} is not in a work "
                                "directory of train.py (no config.json above it)")
    teacher_cfg = workdirs.read_config(folder)
    if teacher_cfg.model.num_classes != cfg.model.num_classes:
        raise errors.StartError(
            f"the teacher in {folder} predicts {teacher_cfg.model.num_classes} classes, the "
            f"student {cfg.model.num_classes}: distil a teacher of the same classes")
    theirs, ours = ((c.data.target, c.data.target_root) for c in (teacher_cfg, cfg))
    if theirs != ours:
        # A student learning a teacher on images of another domain learns what it never
        # adapted to, and scores there: not what the command asked for.
        raise errors.StartError(
            f"the teacher in {folder} was adapted to --target={theirs[0]}"
            + (f" (--target_root={theirs[1]})" if theirs[1] else "")
            + f", this stage reads --target={ours[0]}"
            + (f" (--target_root={ours[1]})" if ours[1] else "")
            + ": give the teacher's target, or another teacher")
    method_dir = os.path.dirname(os.path.abspath(workdir))

    def stored(path):
        path = os.path.abspath(path)
        inside = os.path.commonpath([path, method_dir]) == method_dir
        return os.path.relpath(path, os.path.abspath(workdir)) if inside else path

    return {"workdir": stored(folder), "checkpoint": stored(checkpoint),
            "config": workdirs.record(teacher_cfg)}


class DistillStage(Stage):
    name = "distill"
    # Our choice (no paper to follow): as long as the self-training stage, at its
    # LR, on one source and one target patch.
    recipe = dict(steps=30_000, batch_size=2, lambda_ce=0.5)
    # The demo: 3000 steps at the adaptation stage's patches and LR (1500 left the
    # student 3.2 mIoU below the self-training teacher, 67.7, on demo_target at seed
    # 0; 3000: +0.5). Batches of 4 and no source term: demo_target's classes swap
    # colours (sky pink, facades green), so raw source images teach the student the
    # source's colours (both measured before the student stopped seeing the source
    # at lambda_ce 0: batch 2, 47.4 mIoU; 4, 51.4; lambda_ce 0.5, 44.3).
    preset_edits = {"demo": dict(steps=3000, batch_size=4, patch_size=128, segmenter_lr=1e-3,
                                 lambda_ce=0.0)}
    networks = ("segmenter", TEACHER)
    restores = (TEACHER,)
    restored_from = {TEACHER: "segmenter"}
    restore_flags = {TEACHER: "teacher_dir"}
    frozen = (TEACHER,)
    segmenter_init_flag = "student_init_checkpoint"
    own_fields = ("teacher_dir", "student_init_checkpoint", "student", "distill_targets",
                  "distill_temperature")
    updates = (SEGMENTER,)
    segmenter_batch_norm_trains = True
    batch_keys = ("source_image", "source_label", "target_image")
    progress_metrics = ("loss/distill", "loss/source_ce")

    def validate(self, cfg):
        if cfg.run.init_checkpoint:
            raise errors.UsageError(
                f"--init_checkpoint={cfg.run.init_checkpoint} starts a method's first "
                "segmenter; the distill stage's student starts from --student_init_checkpoint")

    def fixed_edits(self, cfg):
        return (f"--student={cfg.model.student} (udamobile/nets/students.py)",
                STUDENTS[cfg.model.student])

    def network_models(self, cfg, workdir, sources, chief):
        """The teacher's ModelConfig: from teacher.json when resuming, else from the
        config of the work directory its checkpoint is in (writing teacher.json, over
        that of a start that saved no checkpoint)."""
        resuming = checkpointing.newest_checkpoint(workdirs.checkpoint_dir(workdir))
        record = teacher_record(workdir) if resuming else None
        if record is None:
            if TEACHER not in sources:
                raise errors.StartError(
                    "stage distill has no teacher: run it as part of a method that trains "
                    "a segmenter first (full_distilled, full_self_training_distilled), or "
                    "give --teacher_dir, a work directory of a trained segmenter")
            written = _new_teacher_record(cfg, workdir, sources[TEACHER])
            if chief:
                files.write_json(os.path.join(workdir, TEACHER_FILE), written)
            teacher_cfg = workdirs.from_record(written["config"])
        else:
            teacher_cfg = record["config"]
        return {TEACHER: teacher_cfg.model}

    def train_splits(self, cfg):
        target = [inputs.target_train(cfg)]
        return [inputs.source_train(cfg), *target] if cfg.loss.lambda_ce else target

    def build_inputs(self, cfg, start_step, run):
        if cfg.loss.lambda_ce:
            return inputs.unpaired_patches(cfg, start_step, run.bad_files)
        # Source patches no loss reads are not decoded; the target's are those of the
        # unpaired stream all the same, so lambda_ce changes nothing else.
        return inputs.image_patches(cfg, inputs.target_train(cfg), start_step,
                                    run.bad_files).map(lambda b: {"target_image": b["image"]})

    def make_step(self, state, cfg, active):
        """batch: {"source_image", "target_image": [B, P, P, 3] in [-1, 1],
        "source_label": [B, P, P] train ids}; at lambda_ce 0 "target_image" alone."""
        student, teacher = state.networks["segmenter"], state.networks[TEACHER]
        loss_cfg, weight_decay = cfg.loss, cfg.optim.weight_decay

        def compute(batch):
            teacher_logits = teacher(batch["target_image"], training=False)["logits"]
            target_logits = student(batch["target_image"], training=True)["logits"]
            if loss_cfg.distill_targets == "soft":
                distill = losses.distillation_loss(teacher_logits, target_logits,
                                                   loss_cfg.distill_temperature)
            else:
                distill = losses.top_class_cross_entropy(teacher_logits, target_logits)
            l2 = losses.l2_regularization(state.regularized, weight_decay)
            total, metrics = distill + l2, {"loss/distill": distill, "loss/l2": l2}
            if loss_cfg.lambda_ce:
                # Only when the term counts: a training pass over source images also
                # moves the student's batch-norm statistics towards the source's. At
                # lambda_ce 0 that pass cost the demo's student 4.7 mIoU on demo_target
                # (52.0, and 56.7 with its statistics re-estimated on target patches).
                source_logits = student(batch["source_image"], training=True)["logits"]
                source_ce = losses.cross_entropy(batch["source_label"], source_logits)  # Eq. 5
                total += loss_cfg.lambda_ce * source_ce
                metrics["loss/source_ce"] = source_ce
            return {SEGMENTER.name: total}, metrics, {}

        return steps.one_sided_step(state, [SEGMENTER], compute, cfg)

    def summary_images(self, state, batch):
        image = batch["target_image"][:1]
        return {"target_image": images.to_pixels(image),
                "teacher": steps.prediction_image(state.networks[TEACHER], image),
                "student": steps.prediction_image(state.networks["segmenter"], image)}


DISTILL = DistillStage()
