"""Kubeflow Pipelines components of latentanon: one folder per pipeline stage.

Every component is a lightweight Python component running in the project image
(``components.image.PROJECT_IMAGE``); its body calls the same ``latentanon.stages`` function that
``dvc repro`` calls, through ``latentanon.kfp_io`` which maps KFP artifacts onto the stage layout.
"""
