"""FTPV data for multi-view video alignment: the layout (its names, reader), datasets and the renderer's scenario."""
from .datasets import (IMAGENET_MEAN, IMAGENET_STD, ClipDataset, TrajectoryDataset, TripletDataset, normalize,
                       sample_positive_negative)
from .ftpv import (DATASETS, FPV, FRAME_RESIZE, SPLITS, TPV, DatasetSpec, Trajectory, count_dataset_views, frame_name,
                   open_split, read_frame, resolve_dataset, split_names, trajectory_name, trajectory_view_dirs,
                   view_folder_names, view_selection)

__all__ = ["DATASETS", "FPV", "FRAME_RESIZE", "SPLITS", "TPV", "count_dataset_views", "frame_name", "trajectory_name",
           "trajectory_view_dirs", "DatasetSpec", "Trajectory", "open_split", "read_frame", "resolve_dataset",
           "split_names", "view_folder_names", "view_selection", "TrajectoryDataset", "TripletDataset", "ClipDataset",
           "normalize", "sample_positive_negative", "IMAGENET_MEAN", "IMAGENET_STD"]
