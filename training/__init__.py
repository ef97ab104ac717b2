"""Training DS-Nets: Stage I supernet with In-place Ensemble Bootstrapping, Stage II gate with Sandwich
Gate Sparsification (DS-Net, CVPR 2021).  Imports dsnet_export; dsnet_export never imports this."""
