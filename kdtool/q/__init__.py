"""The Q artifact (:mod:`.matrix`, format ``kdtool.q/1``), its target maths (:mod:`.maths`), PLS priors built
as Q artifacts (:mod:`.priors`) and the class subsets Q and students are sliced to (:mod:`.subsets`)."""
