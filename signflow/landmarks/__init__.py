"""Landmark science: keypoint sequences as an alternative to RGB frames (``extract.representation: landmarks``).

- :mod:`~signflow.landmarks.layout`: joint layouts (holistic, holistic_face, hands), skeleton, mirror map;
- :mod:`~signflow.landmarks.worker`: MediaPipe Holistic, run inside ``.venv-landmarks`` only;
- :mod:`~signflow.landmarks.pool`: the worker processes, seen from the main environment;
- :mod:`~signflow.landmarks.cache`: MediaPipe results kept by content across extract runs;
- :mod:`~signflow.landmarks.normalize`: gap filling and normalisation at load time;
- :mod:`~signflow.landmarks.online`: one video or client sequence -> model input (serving);
- :mod:`~signflow.landmarks.hand_keypoints`: precomputed MediaPipe Hands files -> landmark shards.

The extract stage's orchestration is :mod:`signflow.extract.landmarks`, the torch dataset
:mod:`signflow.training.landmark_data`. Nothing is imported here: the worker imports
:mod:`~signflow.landmarks.layout` in the isolated environment, which has no torch.
"""
