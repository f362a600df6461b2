"""The source study's reported numbers (mean, std over its zoo), for tables that put ours
beside them. Keys are hidden widths unless said otherwise."""

# Table 3.1, Moons: (test loss, std, test accuracy, std).
MOONS_TABLE_3_1 = {
    2: (0.284, 0.084, 0.859, 0.077), 4: (0.206, 0.092, 0.903, 0.049),
    8: (0.124, 0.105, 0.941, 0.057), 16: (0.028, 0.043, 0.991, 0.024),
    32: (0.012, 0.002, 0.996, 0.001), 64: (0.009, 0.002, 0.997, 0.001),
    128: (0.006, 0.001, 0.998, 0.001), 256: (0.005, 0.001, 0.999, 0.001),
    512: (0.004, 0.0, 0.998, 0.001)}

# Table 3.2, MNIST: (test loss, std, test accuracy, std).
MNIST_TABLE_3_2 = {
    2: (2.301, 0.0, 0.113, 0.002), 4: (0.690, 0.056, 0.798, 0.018),
    8: (0.225, 0.010, 0.938, 0.003), 16: (0.134, 0.008, 0.966, 0.002),
    32: (0.120, 0.010, 0.978, 0.002), 64: (0.108, 0.008, 0.983, 0.001),
    128: (0.102, 0.009, 0.985, 0.001), 256: (0.102, 0.009, 0.985, 0.001),
    512: (0.111, 0.009, 0.985, 0.001)}

# Table 5.1, Moons: (width after merging units with cosine similarity > 0.99, test accuracy after).
MOONS_TABLE_5_1 = {4: (3.72, 0.897), 8: (7.18, 0.934), 16: (13.04, 0.979), 32: (23.28, 0.986),
                   64: (39.26, 0.985), 128: (73.62, 0.987), 256: (141.02, 0.987),
                   512: (271.94, 0.990)}

# Table 5.2, Moons width 512: every init x optimizer configuration.
MOONS_TABLE_5_2 = "test loss ~0.003, test accuracy 0.998-0.999 for every configuration"

# Table 5.3, CIFAR-10 4 x 512: optimizer -> (test loss, test accuracy or None).
CIFAR10_TABLE_5_3 = {"adamw": (1.533, 0.577), "sgd": (1.362, None), "rmsprop": (1.509, 0.547),
                     "adagrad": (1.402, 0.566)}
