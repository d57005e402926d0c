"""Anonymizers: one interface (``latentanon.methods.base.Method``), every method registered by name
(``latentanon.methods.registry.METHODS``): distil (the default), fisher, bottleneck, paper, paper_batch, leace, adversarial,
noise@<scale>, rotation, identity.

Import from the submodules (``latentanon.methods.registry``): this package file imports nothing,
so reading a method's config never loads torch.
"""
