"""Building blocks shared by the Demucs-family models.

- ``conv_blocks``: LayerScale, BLSTM, LocalState, DConv, rescale_module
- ``hybrid``: pad1d, ScaledEmbedding, HEncLayer, HDecLayer, MultiWrap, build_hybrid_unet
- ``spectral``: spectro / ispectro (STFT conventions of the hybrid models)
- ``resample``: band-limited rational resampling (upsample2 / downsample2)
- ``utils``: center_trim, frame_signal
- ``waveform``: valid lengths and mono standardisation of the waveform U-Nets (v2, v3)
- ``transformer``: the v4 cross-domain transformer (HTDemucs)
"""
