"""Datasets and the Lightning datamodule.

Every sample is a dict (the contract between data and models, method-agnostic):
    rgb         float32 (3,H,W) in [-1, 1]
    depth       float32 (1,H,W) metric depth in metres (planar z-depth); 0 where unknown
    valid_mask  bool    (1,H,W) True where depth is valid (decode, range, crop/mask rules applied)
    normal      float32 (3,H,W) unit outward normals, camera frame x LEFT, y UP, z TOWARD the
                camera (SPEC section 5); zero vector where unknown
    intrinsics  float32 (3,3) pinhole K in pixels of this sample's resolution
    name        str     a stable id, e.g. 'ai_001_001/cam_00/0000'
    dataset     str     the dataset's config name, e.g. 'hypersim', 'nyuv2'
"""
