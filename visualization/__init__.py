"""Figures of what 3DTRL recovers: pseudo-depth, tokens in 3D, cameras and video alignment.

``inference`` runs a model once per batch and collects embeddings and geometry,
``frames`` reads the inputs, ``plots`` draws the figures and ``diagram`` draws the layer.
"""
