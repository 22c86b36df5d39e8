"""What each run mode means in numbers, for every protocol and notebook, in one place.

A *table* maps a run mode (`smoke`, `cpu`, `full`) to settings. The protocol tables (`cifar-repvgg`,
`cifar-resnet56`, `imagenet`) hold every field of their config: `defaults` first (the paper-scale protocol, or our
choice where the paper is silent), then what each mode changes. The notebook tables (`01_function_spaces`, ...) hold the
sizes a notebook uses when its parameters cell leaves them at None. `sizes(table, mode)` merges the two levels.

Why each number is what it is, where it is not obvious, is said next to it. The protocols' fields are documented on
their config classes (`experiments.ExperimentConfig`, `imagenet.ImageNetConfig`).
"""

from __future__ import annotations

import copy

from .errors import ConfigError

__all__ = ["TABLES", "MODES", "sizes"]

MODES = ("smoke", "cpu", "full")

_FULL_OMEGAS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.12)

# Fields shared by both CIFAR networks (their defaults; the network tables change some).
_CIFAR_DEFAULTS = dict(
    network="repvgg", dataset="cifar10", arch="A0", width_mult=1.0, n_train=None, n_test=None, batch_size=128,
    eval_batch_size=1000,
    pretrain_epochs=200,  # chenyaofo's CIFAR RepVGG recipe uses 200
    pretrain_lr=0.1, posttrain_epochs=60,  # paper: 60 on CIFAR-100
    posttrain_lr=1e-3,  # ours
    posttrain_optimizer="adamw",  # ours: SGD at any rate that moves the slopes destabilises the BN-free net
    slope_lr_mult=10.0, weight_decay=5e-4, omegas=(), granularities=("channel", "layer"),
    targets=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 14.0, 17.0, 20.0),  # denser at low NAPL
    omega_start=0.002, omega_growth=1.1, control_every=10, target_tol=0.15,  # see `targeting`; ours
    recovery_epochs=30,  # ours: the paper extended post-training "to rule out convergence issues"
    seeds=(0, 1, 2), independent_starts=True, pretrain_seed=0, layer_scale="channels", freeze_tol=0.01,
    out_dir="runs/04_cifar", device="auto", data_dir=None, amp_bf16=None, channels_last=None, compile=None,
    save_models=True,
)

TABLES: dict[str, dict[str, dict]] = {
    # Notebook 04: the plain RepVGG-style net. Each seed pre-trains its own network (independent_starts), and each
    # run post-trains it to a target NAPL (`targeting`), then recovers with the penalty off. `cpu` is sized to about
    # 40 min on 2 CPU cores (measured step times in the README): a 10,000-image training subset, the full test set, 3
    # independent nets, 4 targets. Slopes learn at 3e-2 at a constant rate while linearizing (a slope crosses from 0
    # to 1 in about 35 steps); a trial run here reached NAPL 3.5 and 3.0 for target 2 in 2 epochs, hence up to 4. smoke exercises the code path,
    # not the science: slopes learn 100x faster than weights so that both variants reach a target in 32 steps.
    "cifar-repvgg": {
        "defaults": _CIFAR_DEFAULTS,
        "smoke": dict(arch="A0", width_mult=0.125, n_train=4096, n_test=1000, pretrain_epochs=2, posttrain_epochs=1,
                      slope_lr_mult=100.0, omegas=(), targets=(14.0,), omega_start=0.02, control_every=2,
                      omega_growth=1.3, recovery_epochs=1, seeds=(0,)),
        "cpu": dict(arch="A0", width_mult=0.125, n_train=10_000, pretrain_epochs=10, posttrain_epochs=4,
                    slope_lr_mult=30.0, omegas=(), targets=(2.0, 4.0, 8.0, 14.0), control_every=5, omega_growth=1.2,
                    recovery_epochs=1, seeds=(0, 1, 2)),
        "full": dict(arch="A2", width_mult=1.0, pretrain_epochs=200, posttrain_epochs=60, seeds=(0, 1, 2),
                     save_models=False),
    },
    # Notebook 05: the ablation from the pretrained akamaster ResNet-56, under the same target and recovery protocol.
    # Its "pre-training" fine-tunes those weights (trained on the original PNG CIFAR-10) on the course's files with
    # SGD at a small learning rate, one fine-tune per seed (the only start there is: pre-training variance is not
    # covered), then folds BN. Post-training uses AdamW at 1e-4 for the weights (measured here: at 1e-3 the pretrained
    # ResNet-56 falls to chance within 16 steps even with ω = 0; at 1e-4 it keeps its accuracy). Targets are in the
    # course's NAPL convention (post-addition PReLUs count 1), on the plain net's axis where both reach. `cpu`: about
    # 40 min on 2 CPU cores (a training step of ResNet-56 costs ~6x one of the A0/8 plain net), hence a 5,120-image
    # training subset, at most 4 linearization epochs, and one target, 14, the one the plain net's sweep shares (a
    # second, 20, did not fit the time of the reference run: each ResNet-56 run took 10-18 min on a shared machine). smoke moves slopes at 0.2 so that both variants reach their target in its 32
    # steps of batch 32 (small batches keep notebook 05 under Binder's 1.5 GB).
    "cifar-resnet56": {
        "defaults": {**_CIFAR_DEFAULTS, "network": "resnet56", "out_dir": "runs/05_resnet56",
                     "targets": (4.0, 8.0, 14.0, 20.0, 26.0, 32.0)},
        "smoke": dict(n_train=1024, n_test=500, batch_size=32, eval_batch_size=100, pretrain_epochs=0,
                      posttrain_epochs=1, posttrain_lr=1e-4, slope_lr_mult=2000.0, omegas=(), targets=(30.0,),
                      omega_start=0.02, control_every=2, omega_growth=1.3, recovery_epochs=1, seeds=(0,)),
        "cpu": dict(n_train=5120, pretrain_epochs=1, pretrain_lr=0.01, posttrain_epochs=4, posttrain_lr=1e-4,
                    slope_lr_mult=300.0, omegas=(), targets=(14.0,), control_every=5, omega_growth=1.2,
                    recovery_epochs=1, seeds=(0, 1, 2)),
        "full": dict(pretrain_epochs=10, pretrain_lr=0.01, posttrain_epochs=60, posttrain_lr=1e-4,
                     slope_lr_mult=100.0, seeds=(0, 1, 2), save_models=False),
    },
    # Notebook 06. full: the paper's protocol from a pretrained RepVGG-A2 (checkpoint required). AdamW at 1e-4 for the
    # weights, as in the ResNet-56 ablation: a well-trained network loses accuracy at 1e-3 (measured there on CIFAR;
    # untested here on ImageNet, no GPU was available to us). Slopes at 1e-2 as in both CIFAR protocols; 10 epochs of
    # 5,004 steps give them ample room to reach 1. The ω grid is the CIFAR `full` grid (same 7,808 channels, same
    # penalty scale). smoke and cpu: the ImageNet code path with a small net (A0 at 1/8 width, ~0.1 M parameters);
    # without IMAGENET_DIR they read a generated folder of upscaled CIFAR-10 images, so their accuracies say nothing
    # about ImageNet. smoke exercises the code path, not the science: its slopes learn at 0.3 so that some freeze
    # within its 8 steps.
    "imagenet": {
        "defaults": dict(
            imagenet_dir=None, checkpoint=None, checkpoint_sha256=None, arch="A2", width_mult=1.0, image_size=224,
            n_classes=None, n_train_per_class=None, n_val_per_class=None, generated_folder=(4, 64, 16, 64),
            batch_size=256, eval_batch_size=250, pretrain_epochs=0, pretrain_lr=0.1,
            posttrain_epochs=10,  # paper: 10 on ImageNet
            posttrain_lr=1e-4, posttrain_optimizer="adamw", slope_lr_mult=100.0,
            weight_decay=1e-4,  # RepVGG's ImageNet value
            omegas=_FULL_OMEGAS, granularities=("channel", "layer"), seeds=(0, 1, 2), layer_scale="channels",
            targets=(),  # ImageNet keeps fixed-ω sweeps (not run here); the CIFAR protocols target NAPL
            omega_start=0.002, omega_growth=1.1, control_every=10, target_tol=0.15, recovery_epochs=0,
            independent_starts=False,  # one start: the checkpoint
            freeze_tol=0.01, reader="auto", num_workers=8, out_dir="runs/06_imagenet", device="auto", data_dir=None,
            amp_bf16=None, channels_last=None, compile=None,
            save_models=False,  # A2: 100 MB a run
        ),
        "smoke": dict(arch="A0", width_mult=0.125, image_size=64, n_classes=4, n_train_per_class=64,
                      n_val_per_class=16, generated_folder=(4, 64, 16, 64), batch_size=32, eval_batch_size=64,
                      pretrain_epochs=3, posttrain_epochs=1, posttrain_lr=1e-3, slope_lr_mult=300.0,
                      omegas=(0.01, 0.1), seeds=(0,), num_workers=0, save_models=True,
                      out_dir="runs/06_imagenet_smoke"),
        "cpu": dict(arch="A0", width_mult=0.125, image_size=64, n_classes=10, n_train_per_class=500,
                    n_val_per_class=100, generated_folder=(10, 500, 100, 64), batch_size=64, eval_batch_size=250,
                    pretrain_epochs=15, posttrain_epochs=2, posttrain_lr=1e-3, slope_lr_mult=50.0,
                    omegas=(0.005, 0.02, 0.08), seeds=(0, 1), num_workers=1, out_dir="runs/06_imagenet_cpu"),
        "full": dict(out_dir="runs/06_imagenet_full"),
    },
    # The GPU campaign (`python -m course_lib gpu-campaign`, `course_lib.campaign`): its sweep is
    # `experiments.cifar_config("full", ...)` with the ExperimentConfig fields below; bench_* and workers are the
    # campaign's own settings. full: sized by arithmetic for about ten minutes on one large GPU, not measured (no GPU
    # figure exists yet): RepVGG-A0 at full width on all 50,000 images, 3 independent start networks of 15 epochs, 3
    # targets x 2 variants x 3 seeds = 18 runs of at most 10 linearization + 5 recovery epochs, about 190 epochs of
    # 147 TFLOP (performance-notes §4), 4 runs at once. Wherever the budget ends it, the next call resumes.
    # smoke: the same code at tiny size on the CPU (`--device cpu --tiny`, tests/test_campaign.py): 60 runs of 12
    # steps an epoch, more than a minute's work on 2 cores (24 runs took 45 s on a busy 2-core machine), so that a
    # one-minute budget stops it; slopes as fast as in notebook 04's smoke, so that targets are reached.
    "gpu-campaign": {
        "defaults": dict(arch="A0", width_mult=1.0, n_train=None, n_test=None, pretrain_epochs=15, posttrain_epochs=10,
                         recovery_epochs=5, targets=(4.0, 10.0, 16.0), seeds=(0, 1, 2), bench_steps=50,
                         bench_warmup=10, bench_eval_images=None, bench_compile="auto", workers=4),
        "smoke": dict(width_mult=0.125, n_train=384, n_test=100, batch_size=32, eval_batch_size=100, pretrain_epochs=1,
                      posttrain_epochs=1, recovery_epochs=1, targets=tuple(float(t) for t in range(12, 22)), slope_lr_mult=100.0,
                      omega_start=0.02, control_every=2, omega_growth=1.3, bench_steps=2, bench_warmup=1,
                      bench_eval_images=100, bench_compile="off", workers=2),
        "cpu": {},
        "full": {},
    },
    # The lesion study (`course_lib.lesion_study`, notebook 05): Veit et al.'s block deletions on the pretrained
    # ResNet-56, the same lesions on the CIFAR experiment's extracted plain nets (target NAPL 14 in `cpu`, a whole
    # number so that the layer-wise nets reach it exactly: notebook 04's cpu sweep saves them), and on a ResNet-20
    # and its plain twin trained from scratch. The prefix cache makes a lesion set cost the part of the net after
    # its first deletion: the 27 single deletions of ResNet-56 cost about 14 evaluations, a random k-set about
    # k/(k+1) of one. cpu, measured with one thread on the shared 2-core machine (other jobs
    # running): ResNet-56 evaluates 1,000 images in 4-8 s (channels_last, batch 500); D = 20 draws per k on the 1,000
    # lossless images took 25 min and the 10,000-image single deletions 11 min more (36 min for the part). The A0/8
    # plain net evaluates 2,000 images in about 3 s; 6 nets x 2 lesions with D = 5 on 2,000 images took 5-15 min.
    # ResNet-20 costs a third of ResNet-56: the twins use 2,000 images and D = 5 too. full: the whole test set, 100
    # draws and the depth-56 twins of the from-scratch comparison's full profile, on a GPU. smoke: a few sets on 100
    # images, for the code path (about 12 s for ResNet-56).
    "lesion": {
        "defaults": dict(max_k=10, seed=0, resnet56_draws=20, resnet56_n_images=None, resnet56_full_test=True,
                         extracted_draws=5, extracted_n_images=2000, extracted_target=14.0,
                         extracted_seeds=(0, 1, 2), extracted_mode="cpu", twins_depth=20, twins_draws=5,
                         twins_n_images=2000, batch_size=500, device="cpu", cifar_dir="runs/04_cifar_cpu",
                         scratch_dir="runs/from_scratch_cpu", out_dir="runs/lesion", data_dir=None),
        "smoke": dict(max_k=3, resnet56_draws=2, resnet56_n_images=100, resnet56_full_test=False, extracted_draws=2,
                      extracted_n_images=100, extracted_target=14.0, extracted_seeds=(0,), extracted_mode="smoke",
                      twins_draws=2, twins_n_images=100, batch_size=100, cifar_dir="runs/04_cifar_smoke",
                      scratch_dir="runs/from_scratch_smoke", out_dir="runs/lesion_smoke"),
        "cpu": dict(out_dir="runs/lesion_cpu"),
        "full": dict(resnet56_draws=100, extracted_draws=100, extracted_n_images=None, twins_depth=56,
                     twins_draws=100, twins_n_images=None, device="auto", extracted_mode="full",
                     cifar_dir="runs/04_cifar_full", scratch_dir="runs/from_scratch_full", out_dir="runs/lesion_full"),
    },
    # Notebook 06's own checks: the input size of its A2 checks (smoke: smaller, same maths) and the processes it
    # launches here (smoke and cpu run in the kernel: two torchrun workers would each load torch, over Binder's memory).
    "06_imagenet_repvgg_a2": {
        "defaults": dict(check_image_size=224, processes=None),  # None: this machine's GPUs
        "smoke": dict(check_image_size=64, processes=1),
        "cpu": dict(processes=1),
        "full": {},
    },
    # The from-scratch comparison (`course_lib.from_scratch`, the opening of notebook 01): a CIFAR ResNet and its
    # plain twin trained with the same recipe (He et al. 2016's SGD with Nesterov momentum, lr 0.1, wd 5e-4, batch
    # 128, crop + flip; a cosine schedule), one pair per seed. full: ResNet-20/56 and plain-20/56 on all 50,000
    # images for 180 epochs (He et al. train about 182 epochs: 64k steps on 45k images), 3 seeds; not run here.
    # cpu: ResNet-20 and plain-20 on a 10,000-image subset, the whole test set, 3 seeds, 12 epochs, sized for at
    # most ~35 min on one thread of a shared 2-core machine. Measured here with bf16, one thread: a step costs 0.27 s
    # (ResNet-20) and 0.26 s (plain-20) when the machine is idle, 21 s an epoch of 78 steps; with other work on it
    # (load 3) one epoch took 37.6 s and 25.1 s, so 6 nets x 12 epochs take about 25 min idle and 38 min loaded; the
    # stored reference (data/reference/from_scratch_cpu/) took 39 min under a load of 3 to 6.
    # The per-epoch accuracy curve uses the first 2,000 test images (a full pass would add a third to every epoch),
    # the final accuracy all 10,000. smoke: depth 8 on 384 images, one epoch, two seeds: it exercises the code path
    # and judges nothing.
    "from-scratch": {
        "defaults": dict(depths=(20, 56), seeds=(0, 1, 2), dataset="cifar10", epochs=180, n_train=None, n_test=None,
                         curve_n_test=None, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, data_dir=None,
                         eval_batch_size=1000, out_dir="runs/from_scratch_full", device="auto", amp_bf16=None,
                         channels_last=None, compile=None),
        "smoke": dict(depths=(8,), seeds=(0, 1), epochs=1, n_train=384, n_test=500, curve_n_test=200,
                      eval_batch_size=500, out_dir="runs/from_scratch_smoke"),
        "cpu": dict(depths=(20,), seeds=(0, 1, 2), epochs=12, n_train=10_000, curve_n_test=2000,
                    out_dir="runs/from_scratch_cpu"),
        "full": {},
    },
    # Notebook 01: random inputs per Proposition-1 error measurement and the ε grid (from 0.1 down to 1e-4).
    "01_function_spaces": {
        "defaults": dict(n_inputs=1000, eps_points=7),
        "smoke": dict(n_inputs=200, eps_points=4),
        "cpu": {},
        "full": {},
    },
    # Notebook 02: a small pre-training and post-training on the lossless 4,000-image CIFAR-10 subset.
    "02_prelu_linearization": {
        "defaults": dict(n_train=4000, pretrain_epochs=10, posttrain_epochs=4, slope_lr_mult=30.0, omegas=(0.01, 0.1),
                         n_test=None),  # None: every lossless test image
        "smoke": dict(n_train=2048, pretrain_epochs=2, posttrain_epochs=2, slope_lr_mult=100.0, n_test=500),
        "cpu": {},
        "full": {},
    },
}


def sizes(table: str, mode: str) -> dict:
    """The settings of `table` in run mode `mode` (`smoke`, `cpu` or `full`): its defaults, then the mode's changes.

    Raises:
        ConfigError (a ValueError): an unknown table or mode, listing the valid ones.
    """
    if table not in TABLES:
        raise ConfigError(f"unknown profile table {table!r}; valid tables are {', '.join(TABLES)}")
    if mode not in MODES:
        raise ConfigError(f"unknown run mode {mode!r} for profile {table!r}; use one of {', '.join(MODES)} "
                         "(resolve 'auto' with config.resolve_mode first)")
    return copy.deepcopy({**TABLES[table]["defaults"], **TABLES[table][mode]})
