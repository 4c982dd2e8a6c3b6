"""`tfcompress run RECIPE.yaml`: run a whole pipeline from a YAML recipe."""


def add_parser(p):
    p.add_argument("recipe", help="the recipe file (see recipes/README.md)")
    p.add_argument("-o", "--output", default=None, help="output folder (default: the recipe's `output`)")
    p.add_argument("--check", action="store_true", help="validate the recipe and exit without running it")


def main(args):
    from tfcompress import recipes
    if args.check:
        recipe, steps = recipes.load(args.recipe)
        print(f"{args.recipe}: valid; steps: {', '.join(name for name, _ in steps)}")
        return 0
    recipes.run(args.recipe, out=args.output)
    return 0
