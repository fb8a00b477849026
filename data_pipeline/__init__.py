"""FTPV data for multi-view video alignment: the layout reader, datasets and the pybullet renderer."""
from .datasets import (IMAGENET_MEAN, IMAGENET_STD, ClipDataset, TrajectoryDataset, TripletDataset, normalize,
                       sample_positive_negative)
from .ftpv import (DATASETS, SPLITS, DatasetSpec, Trajectory, open_split, read_frame, split_names, view_folder_names,
                   view_selection)

__all__ = ["DATASETS", "SPLITS", "DatasetSpec", "Trajectory", "open_split", "read_frame", "split_names",
           "view_folder_names", "view_selection", "TrajectoryDataset", "TripletDataset", "ClipDataset", "normalize",
           "sample_positive_negative", "IMAGENET_MEAN", "IMAGENET_STD"]
