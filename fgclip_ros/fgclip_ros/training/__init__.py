# Copyright 2026 The fgclip_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Training in the project's offline test world: the embedded model and re-projection heads.

- ``data``: rendered crops (DataLoader workers), a GPU pool of them, GPU augmentation, and
  web-style biased captions assembled on the GPU.
- ``base_model``: the small open_clip CLIP ``fgsynth`` trained with open_clip's ClipLoss.
- ``probes``: linear probes on frozen image embeddings and a cosine hard-negative check.
- ``reprojection``: the paper's heads trained with a triplet loss on cached frozen embeddings of
  any FG-OVD-format set.

Nothing here is imported by the real-model paths.
"""
