"""`tfcompress run RECIPE.yaml`: run a whole pipeline from a YAML recipe."""


def add_parser(p):
    p.add_argument("recipe", help="the recipe file (see recipes/README.md)")
    p.add_argument("-o", "--output", default=None, help="output folder (default: the recipe's `output`)")
    p.add_argument("--check", action="store_true", help="validate the recipe and exit without running it")


def main(args):
    from tfcompress import recipes
    recipe, steps = recipes.load(args.recipe)
    if args.check:
        print(f"{args.recipe}: valid; steps: {', '.join(name for name, _ in steps)}")
        return 0
    # the data spec and a saved model are checked before TensorFlow loads (the runner loads both again)
    from tfcompress import data
    from tfcompress.saving import check_model_path
    if recipe.model.path:
        check_model_path(recipe.model.path)
    data.load(recipe.data.spec, "train")
    recipes.run(args.recipe, out=args.output)
    return 0
