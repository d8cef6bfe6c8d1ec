"""Shipped problems: one module per problem, named by its stem (``poisson2d`` -> ``Poisson2D``)."""
