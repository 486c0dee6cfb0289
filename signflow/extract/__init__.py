"""The extract stage's library: one module per representation, over one crop-plan file format.

- :mod:`signflow.extract.plans`: ``plans.jsonl`` and the ``skipped.csv`` lists (crop writes them,
  both extractors read them, every stage that skips videos writes its list through it);
- :mod:`signflow.extract.rgb`: ``extract.representation: rgb``, decoded frames in a process pool;
- :mod:`signflow.extract.landmarks`: ``extract.representation: landmarks``, MediaPipe Holistic
  through :class:`signflow.landmarks.pool.WorkerPool`.

``stages/extract.py`` picks one by the representation. Nothing is imported here, so the crop
stage can read the plan format without loading either extractor.
"""
