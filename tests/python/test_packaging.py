"""The wheel installs the plugin file into Twisted's plugin package without replacing it."""

import pathlib

import twisted.plugins
from twisted.application.reactors import IReactorInstaller
from twisted.plugin import getPlugins


def test_twisted_lists_the_tm_reactor():
    installers = {plugin.shortName: plugin for plugin in getPlugins(IReactorInstaller)}
    assert "tm" in installers
    assert installers["tm"].moduleName == "tm_twisted"


def test_twisted_plugin_package_is_still_twisteds_own():
    # Shipping an __init__.py there would have overwritten Twisted's, which extends __path__.
    init = pathlib.Path(twisted.plugins.__file__).read_text()
    assert "pluginPackagePaths" in init
