"""The student segmenter: a small U-Net distilled from the classifier's explanations, image labels only.

:mod:`~lrpseg.core.student.unet` (the network, shared with the benchmark's supervised U-Net),
:mod:`~lrpseg.core.student.targets` (pseudo-masks with an ignore band, background from undamaged labels),
:mod:`~lrpseg.core.student.distil` (training, self-training, measured threshold),
:mod:`~lrpseg.core.student.store` (the file and its compatibility checks) and
:mod:`~lrpseg.core.student.infer` (probability maps, refined analyses, batch segmentation).
"""
