"""Layer 5: config specs → objects (data, model, loaders, balancer, optimizer).

Each module builds one kind of object from the part of a config it needs: :mod:`.data`,
:mod:`.model`, :mod:`.loaders`, :mod:`.optim`, :mod:`.balancing`, :mod:`.merge`, and the helpers
they share (:mod:`.images`, :mod:`.modal`, :mod:`.ssl`, :mod:`.label_columns`, :mod:`.unlabeled`).
"""
