"""Optimisation of a method's own parameters: row-lazy SGD for LLS's Q (:mod:`.lazysgd`) and the reduction of
its dense or row-sparse gradients across torchrun processes (:mod:`.rowgrads`)."""
