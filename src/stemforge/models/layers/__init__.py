"""Building blocks shared by the Demucs-family models.

- ``conv_blocks``: LayerScale, BLSTM, LocalState, DConv, rescale_module
- ``hybrid``: pad1d, ScaledEmbedding, HEncLayer, HDecLayer, MultiWrap
- ``spectral``: spectro / ispectro (STFT conventions of the hybrid models)
- ``resample``: band-limited rational resampling (upsample2 / downsample2)
- ``utils``: center_trim, frame_signal
- ``transformer``: the v4 cross-domain transformer (HTDemucs)
"""
