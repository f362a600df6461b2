"""Datasets: Moons from a seed, MNIST and CIFAR-10 from verified files, their parsers."""
