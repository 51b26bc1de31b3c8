"""One module per upstream wire format. Each adapter speaks OpenAI chat format to the gateway."""
