"""ONNX generation from an arch spec (numpy + onnx only, never torch).

``graph`` builds graphs whose weights are asked for by supernet key and prefix shape; ``emit`` writes
the gate, route and full engines; ``masking`` writes the official full-width masking network the
bench compares with.  Export, TensorRT and the bench all emit through this layer.
"""
