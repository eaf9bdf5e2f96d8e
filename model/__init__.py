"""The masked-diffusion code model: tokenizer, network, objective, corpus, training, sampler."""
