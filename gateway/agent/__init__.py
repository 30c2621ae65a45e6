"""`vpngw agent`: the data plane of one gateway host, fed over HTTP by the control plane."""
