"""What a command does from resolved options to its files: train a teacher, distil a student and the run loop they
share (:mod:`.pipeline`, building the method with :mod:`.methods`), evaluate (:mod:`.evaluate`), import a network
(:mod:`.importer`), export Q from runs (:mod:`.qsources`) and the Python API ``kdtool.fit`` (:mod:`.api`)."""
