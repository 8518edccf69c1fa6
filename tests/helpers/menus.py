"""Expected menus, written out once for the tests that check them in kdcore and in the app."""

# the methods for a causal language model, in the registry's (and the Distill page's) order
LM_METHODS = ["token", "gkd", "minillm", "distillm", "attn_kl", "seqkd", "hybrid", "ce"]
