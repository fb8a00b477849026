"""The keys of the release's TimeSformer config (its ``timesformer/config/defaults.py``: SlowFast's
defaults plus TimeSformer's) that this project does not have.

A config written for the release may set them (``config.set_aside_release_keys``): the sections and
keys that cannot change a ViT TimeSformer run are accepted whatever their value, the others only at
the release's default (below), and anything else is refused in one line. SlowFast's sections
(``SLOWFAST``, ``RESNET``, ``NONLOCAL``, ``BN``) mark a SlowFast config, refused as a whole.
"""

# Sections and keys with no effect here: AVA and X3D concern other data sets and models, the rest
# only what is logged or shown, or other models.
NO_EFFECT_SECTIONS = ('AVA', 'BENCHMARK', 'DEMO', 'TENSORBOARD', 'X3D')
NO_EFFECT_KEYS = ('LOG_MODEL_INFO', 'LOG_PERIOD', 'DATA_LOADER.ENABLE_MULTI_THREAD_DECODE',
                  # read by the release's SlowFast, ResNet and X3D builders only, not by its ViT TimeSformer
                  'MODEL.DROPCONNECT_RATE', 'MODEL.FC_INIT_STD', 'MODEL.MULTI_PATHWAY_ARCH', 'MODEL.SINGLE_PATHWAY_ARCH')

# The rest, with the release's default: the only value accepted.
RELEASE_ONLY_DEFAULTS = {
    'DATA.AUTO_AUGMENT': '',
    'DATA.COLOR_JITTER': 0.0,
    'DATA.CROP_SIZE': 224,
    'DATA.DEIT_TRANSFORMS': False,
    'DATA.INV_UNIFORM_SAMPLE': False,
    'DATA.MULTI_LABEL': False,
    'DATA.REVERSE_INPUT_CHANNEL': False,
    'DATA.RE_PROB': 0.0,
    'DATA.TEMPORAL_EXTENT': 8,
    'DETECTION.ALIGNED': True,
    'DETECTION.ENABLE': False,
    'DETECTION.ROI_XFORM_RESOLUTION': 7,
    'DETECTION.SPATIAL_SCALE_FACTOR': 16,
    'EMA.ENABLED': False,
    'GLOBAL_BATCH_SIZE': 64,
    'MIXUP.ALPHA': 0.8,
    'MIXUP.CUTMIX_ALPHA': 1.0,
    'MIXUP.CUTMIX_MINMAX': None,
    'MIXUP.ENABLED': False,
    'MIXUP.MODE': 'batch',
    'MIXUP.PROB': 1.0,
    'MIXUP.SWITCH_PROB': 0.5,
    'MODEL.HEAD_ACT': 'softmax',
    'MULTIGRID.BN_BASE_SIZE': 8,
    'MULTIGRID.DEFAULT_B': 0,
    'MULTIGRID.DEFAULT_S': 0,
    'MULTIGRID.DEFAULT_T': 0,
    'MULTIGRID.EPOCH_FACTOR': 1.5,
    'MULTIGRID.EVAL_FREQ': 3,
    'MULTIGRID.LONG_CYCLE': False,
    'MULTIGRID.LONG_CYCLE_FACTORS': [[0.25, 0.7071067811865476], [0.5, 0.7071067811865476], [0.5, 1], [1, 1]],
    'MULTIGRID.LONG_CYCLE_SAMPLING_RATE': 0,
    'MULTIGRID.SHORT_CYCLE': False,
    'MULTIGRID.SHORT_CYCLE_FACTORS': [0.5, 0.7071067811865476],
    'SOLVER.BASE_LR_SCALE_NUM_SHARDS': False,
    'SOLVER.GAMMA': 0.1,
    'SOLVER.STEP_SIZE': 1,
    'SOLVER.WARMUP_FACTOR': 0.1,
    'TEST.CHECKPOINT_TYPE': 'pytorch',
    'TRAIN.CHECKPOINT_CLEAR_NAME_PATTERN': [],
    'TRAIN.CHECKPOINT_EPOCH_RESET': False,
    'TRAIN.CHECKPOINT_INFLATE': False,
    'TRAIN.CHECKPOINT_TYPE': 'pytorch',
}
