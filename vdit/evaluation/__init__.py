"""Benchmark metrics: DAVIS-2017 J&F (both protocols), Ref-DAVIS17, MeViS, Ref-YouTube-VOS submission
files, A2D/JHMDB mAP + IoU, RefCOCO IoU. See docs/evaluation.md.

Modules: `jf` (per-frame J and F, shared by every video benchmark), `davis`, `mevis`,
`ytvos_submission`, `coco_map`, `referring_iou`, `masks_io`.
"""
