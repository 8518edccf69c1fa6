"""sample_models: small teacher/student pairs on shipped or generated data, with their training
script and committed safetensors weights."""
