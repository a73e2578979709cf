"""consumer/: the Faust workers — fetch images from S3, classify them with SqueezeNet, write results."""
