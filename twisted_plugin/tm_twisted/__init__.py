"""tm_twisted: the Twisted reactor of tm-reactor (selected with ``twistd --reactor=tm``)."""
